"""The daemon: scheduler, HTTP surface, signals, systemd notifications, and the demo."""
