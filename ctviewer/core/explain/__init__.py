"""Why a model says what it says: Grad-CAM and the histogram baseline."""
