"""`redkeep audit`: facts read from a server, checks, CVE data, reports."""
