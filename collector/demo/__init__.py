"""``netreflex demo``: a simulated ISP on loopback for the real daemon to watch."""
