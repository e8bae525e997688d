"""The nlpctl command line."""
