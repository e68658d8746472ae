"""ganprint: which camera or which generator made an image, or "unknown"."""
