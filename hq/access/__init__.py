"""Who may use HQ: staff accounts and their roles, console sessions, integration tokens,
the guard in front of every HQ route, and masking of personal data by role.

- ``roles``: the roles, what each may do, and the ``Principal`` a request acts as.
- ``users``: accounts, scrypt password hashes, lockout after repeated failures.
- ``sessions``: console sessions (cookie + CSRF token) and bearer tokens.
- ``guard``: ``init_app`` refuses every request that is not signed in, except the few
  routes named in ``PUBLIC_ENDPOINTS``, and checks each route's declared permission.
- ``masking``: phone numbers and other personal data as each role may see them.
"""
