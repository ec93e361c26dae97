"""raycai-tui: a keyboard-driven Textual dashboard for Ray clusters on CML.

Owns no API or process logic: every operation goes through raycai_core. Keep this module
free of imports so that start-up stays fast.
"""
