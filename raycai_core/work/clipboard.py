"""Copy text to the user's clipboard through the terminal: the OSC 52 escape sequence.

Works over SSH and in CML's web terminal when the terminal allows it; nothing is stored on
the machine. Inside tmux the sequence must be wrapped to reach the outer terminal.
"""

from __future__ import annotations

import base64

OSC52_MAX_BYTES = 74_994  # the largest payload most terminals accept (xterm's limit, base64)


def osc52_sequence(text: str, *, tmux: bool = False) -> str:
    """The escape sequence that puts `text` on the clipboard (`c` selection)."""
    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(payload) > OSC52_MAX_BYTES:
        raise ValueError(f"too long for the terminal's clipboard ({len(payload)} bytes encoded)")
    sequence = f"\x1b]52;c;{payload}\x07"
    if tmux:
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence
