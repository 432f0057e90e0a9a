"""English formats (also en-us): ISO dates, 24-hour UTC times with the zone spelled out.

TIME_ZONE is UTC, so ``T`` prints "UTC"; keep the two together.
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s T"
TIME_FORMAT = "H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "F j"
