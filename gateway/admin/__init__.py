"""The human side of the gateway under /admin: the approval pages and the admin JSON API."""
