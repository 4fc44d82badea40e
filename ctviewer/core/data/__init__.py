"""Reading images and folders: imaging, the preprocessing cache, datasets, labels, splits, the demo set."""
