"""Follow-up calls (回访, issue 14; docs/followups.md).

- ``tasks``: the chain's rules (``FollowUpRule``), the scheduler job that makes the tasks
  (``FollowUp``) idempotently and assigns each to the member's maintainer, the change
  entity ``followup`` that takes a store's tasks down, an outcome recorded (the ingest of
  ``followup_outcome`` or the console) with a complaint tagging the member and reaching
  the store manager, and the count of calls done per staff member.
- ``console``: the console's page 回访 (``followups.read`` / ``followups.manage``).
"""
