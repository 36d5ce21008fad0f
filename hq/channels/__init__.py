"""Channels HQ reaches members through (docs/member-page.md, "The SMS adapter").

``sms``: the ``SmsGateway`` protocol, its HTTP implementation (``HttpSmsGateway``) and
``sms_gateway(config)``, which the member page's verification codes use and a campaign
engine can use too. ``fake_gateway``: a local HTTP server standing in for a real gateway
in tests and the demo, able to refuse, fail and stall on purpose.
"""
