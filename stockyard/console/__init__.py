"""The web console: server-rendered pages for tenant admins, inventory users and support
engineers, on the same services, transaction and `require(scope)` as the API."""
