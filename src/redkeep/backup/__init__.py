"""Backups that restore: capture (RDB over replication, AOF), pipeline, stores, retention,
notifications, reports, restore and verify drills."""
