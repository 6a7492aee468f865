"""Study and training scripts (`runs/<name>.py`); a package so the demo can import the studies."""
