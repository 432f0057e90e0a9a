"""Signals the lifecycle sends after commit, for what lives above the services.

A service must not import the layers that read it (pages, mails built from page evidence):
that would close an import circle. It announces instead; ``apps.ready`` connects the
receivers (``approval_mails``). Sent from ``transaction.on_commit``, so a receiver never
sees a decision that was rolled back.
"""

from __future__ import annotations

from django.dispatch import Signal

# A version awaits approval (kwargs: model_version_id).
approval_requested = Signal()
# An approval, re-approval or rejection was recorded (kwargs: approval_id).
approval_decided = Signal()
# A staging deployment succeeded and its version is staged (kwargs: deployment). Sent inside
# the deployment's finishing transaction, not after commit: the forward paper run it opens
# (services.forward) commits or rolls back with the deployment's outcome.
staging_deployed = Signal()
