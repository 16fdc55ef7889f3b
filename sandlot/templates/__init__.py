"""Read-only root filesystems that sandboxes use as their overlay lower layer."""
