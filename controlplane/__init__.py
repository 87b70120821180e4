"""Control plane of the trading engine cluster: Django project, admin, API, supervisor."""
