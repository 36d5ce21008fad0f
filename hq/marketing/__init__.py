"""Member marketing at HQ (issue 14): the monthly and weekly lists, segments, and the
audience a campaign takes (docs/marketing.md).

- ``settings``: the chain's thresholds (lifecycle, windows), with defaults from the
  chain's own articles.
- ``audience``: conditions compiled to one SQL text for SQLite and PostgreSQL; counts and
  member ids, keyset-paged, for a list or a segment spec.
- ``lists``: 新会员激活, 生日祝福, 沉睡会员唤醒 (monthly) and the weekly new members with
  their call day; stored runs (``ListRun``) made by the scheduler.
- ``api`` and ``pages``: ``/api/marketing/...`` and the console's 营销 pages.
"""
