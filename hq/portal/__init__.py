"""The member's own page (issue 14; docs/member-page.md).

- ``keys``: the keys the page uses, all derived from the chain lookup key (hq/lookup.py).
- ``view``: what the page shows of a member, as a dict (the page and its JSON twin).
- ``binding``: binding a phone with a verification code sent through hq/channels/sms.py.
- ``pages``: the public routes ``/m/<token>`` (hq/access/guard.py PUBLIC_ENDPOINTS says why).
"""
