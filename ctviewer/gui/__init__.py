"""PySide6 + pyqtgraph desktop front end. Imports core; core never imports this package."""
