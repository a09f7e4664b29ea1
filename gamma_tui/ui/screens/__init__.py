"""The app's screens: launcher, dashboard, collapse view, run browser and dialogs."""
