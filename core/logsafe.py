"""Logs carry no personal data: no phone number, PIN, password or key in any line.

Our own log lines name members by id and phones masked (core.receipt.mask_phone). What
is left is libraries that log values at DEBUG: peewee logs every statement with its
parameters (phones, names, hashes), so under ``-v`` it stays at INFO. Both command
lines call ``keep_personal_data_out_of_logs`` right after configuring logging;
tests/sync/test_privacy_logs.py runs a whole flow at DEBUG and searches every log.
"""

from __future__ import annotations

import logging

# loggers whose DEBUG lines carry the values of the data they handle
VALUE_LOGGERS = ("peewee",)


def keep_personal_data_out_of_logs() -> None:
    for name in VALUE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
