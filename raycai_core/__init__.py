"""raycai core: cluster specs, launcher scripts, CML and Ray clients, lifecycle, local workspace.

This package never imports Textual, and only the launcher processes import Ray.
Keep this module free of imports so that `import raycai_core` stays cheap.
"""

__version__ = "0.1.0"
