"""Reports: image grids now; HTML and tables as the defenses arrive."""

from .images import amplified_difference, grid_image, save_png, save_trigger_grid

__all__ = ["amplified_difference", "grid_image", "save_png", "save_trigger_grid"]
