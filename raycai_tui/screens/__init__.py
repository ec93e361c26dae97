"""One module per screen. Modules import raycai_core lazily (start-up time)."""
