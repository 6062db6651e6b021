"""Names a hostile machine or person could give a series, metric, file or operator."""

import random

# Markup
# that runs script if a page inserts it as HTML, template and JavaScript-literal breakouts,
# terminal escapes, path escapes. Any of them run by the page sets window.vigilPwned.
HOSTILE = [
    '<img src=x onerror="window.vigilPwned=1;alert(1)">',
    '"><script>window.vigilPwned=1</script>',
    "' onmouseover='window.vigilPwned=1' x='",
    "<svg onload=window.vigilPwned=1>",
    '<a href="javascript:window.vigilPwned=1">x</a>',
    "</script><script>window.vigilPwned=1</script>",
    "<b>bold</b> &amp; &lt;",
    "${window.vigilPwned=1}`",
    "{{constructor.constructor('window.vigilPwned=1')()}}",
    "\x1b]0;owned\x07\x1b[2J",
    "../../../etc/passwd",
    "\u202eevil",
]
_PIECES = [
    "<",
    ">",
    '"',
    "'",
    "`",
    "&",
    "/",
    "\\",
    "..",
    "${",
    "}",
    "<img src=x onerror=window.vigilPwned=1>",
    "<script>window.vigilPwned=1</script>",
    "javascript:",
    "\x00",
    "\x1b[31m",
    "\r\n",
    "\u2028",
    "é",
    "中",
    " ",
]


def hostile_names(n: int, seed: int = 0, max_pieces: int = 6) -> list[str]:
    """``n`` generated hostile names (seeded): random runs of markup, quote, template, path and
    control-character pieces with letters between, so a test also meets the cases no one listed."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        parts = [rng.choice(_PIECES) + rng.choice("abcxyz") for _ in range(rng.randint(1, max_pieces))]
        out.append(f"h{i}" + "".join(parts))
    return out
