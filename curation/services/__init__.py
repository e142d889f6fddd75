"""Writes to the library. Keyword-only functions named ``<entity>_<action>``, one transaction
each; views, API endpoints, commands and tasks call these and nothing else to change data."""
