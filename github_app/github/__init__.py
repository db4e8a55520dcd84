"""The GitHub client layer: the one way to GitHub for the whole process.

Owns app and installation auth, the shared connection pool, the rate-limit
ledger per installation, secondary-limit pacing and the ETag cache. Imports
control's feedback (to report waits it imposes) and the shared base.
"""
