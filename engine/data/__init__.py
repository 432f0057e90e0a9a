"""Market and sentiment data: a validated local Parquet store, filled from CSV, Binance and
the Fear & Greed API. Plain Python: no Django here.

Typical use::

    from engine.data import read_candles, read_sentiment, join_sentiment
    candles = read_candles(data_dir, "BTCUSDT", "1h", start="2024-01-01")
    sentiment = read_sentiment(data_dir)
    frame = join_sentiment(candles.frame, sentiment.frame, interval="1h")
    candles.content_hash  # record which rows a model or validation run used

Names are imported on first use (engine._lazy): the engine starts without pandas.
"""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.data.binance_source import (
        ENV_BINANCE_API_URL,
        FetchResult,
        binance_api_url,
        fetch_klines,
        klines_to_frame,
        make_client,
    )
    from engine.data.csv_import import read_kline_csv, read_sentiment_csv
    from engine.data.errors import (
        CsvFormatError,
        DataError,
        SourceError,
        StoreEmptyError,
        UnknownSymbolError,
    )
    from engine.data.fear_greed import (
        ENV_FNG_API_URL,
        SentimentResult,
        download_fear_greed,
        fetch_sentiment,
        fng_api_url,
    )
    from engine.data.frames import CANDLE_COLUMNS, CORE_COLUMNS, SENTIMENT_NAME, content_hash
    from engine.data.importing import ImportResult, import_klines_csv, import_sentiment_csv
    from engine.data.intervals import SUPPORTED_INTERVALS, interval_timedelta
    from engine.data.join import join_sentiment
    from engine.data.retry import RetryPolicy
    from engine.data.store import (
        MergeResult,
        ReadResult,
        candles_path,
        read_candles,
        read_sentiment,
        sentiment_path,
        stored_candle_range,
    )
    from engine.data.validation import (
        STRICT,
        ValidationFailed,
        ValidationPolicy,
        ValidationReport,
        apply_candle_policy,
        apply_sentiment_policy,
        validate_candles,
        validate_sentiment,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "engine.data.binance_source": (
            "ENV_BINANCE_API_URL",
            "FetchResult",
            "binance_api_url",
            "fetch_klines",
            "klines_to_frame",
            "make_client",
        ),
        "engine.data.csv_import": (
            "read_kline_csv",
            "read_sentiment_csv",
        ),
        "engine.data.errors": (
            "CsvFormatError",
            "DataError",
            "SourceError",
            "StoreEmptyError",
            "UnknownSymbolError",
        ),
        "engine.data.fear_greed": (
            "ENV_FNG_API_URL",
            "SentimentResult",
            "download_fear_greed",
            "fetch_sentiment",
            "fng_api_url",
        ),
        "engine.data.frames": (
            "CANDLE_COLUMNS",
            "CORE_COLUMNS",
            "SENTIMENT_NAME",
            "content_hash",
        ),
        "engine.data.importing": (
            "ImportResult",
            "import_klines_csv",
            "import_sentiment_csv",
        ),
        "engine.data.intervals": (
            "SUPPORTED_INTERVALS",
            "interval_timedelta",
        ),
        "engine.data.join": ("join_sentiment",),
        "engine.data.retry": ("RetryPolicy",),
        "engine.data.store": (
            "MergeResult",
            "ReadResult",
            "candles_path",
            "read_candles",
            "read_sentiment",
            "sentiment_path",
            "stored_candle_range",
        ),
        "engine.data.validation": (
            "STRICT",
            "ValidationFailed",
            "ValidationPolicy",
            "ValidationReport",
            "apply_candle_policy",
            "apply_sentiment_policy",
            "validate_candles",
            "validate_sentiment",
        ),
    },
)

__all__ = [
    "CANDLE_COLUMNS",
    "CORE_COLUMNS",
    "ENV_BINANCE_API_URL",
    "ENV_FNG_API_URL",
    "SENTIMENT_NAME",
    "STRICT",
    "SUPPORTED_INTERVALS",
    "CsvFormatError",
    "DataError",
    "FetchResult",
    "ImportResult",
    "MergeResult",
    "ReadResult",
    "RetryPolicy",
    "SentimentResult",
    "SourceError",
    "StoreEmptyError",
    "UnknownSymbolError",
    "ValidationFailed",
    "ValidationPolicy",
    "ValidationReport",
    "apply_candle_policy",
    "apply_sentiment_policy",
    "binance_api_url",
    "candles_path",
    "content_hash",
    "download_fear_greed",
    "fetch_klines",
    "fetch_sentiment",
    "fng_api_url",
    "import_klines_csv",
    "import_sentiment_csv",
    "interval_timedelta",
    "join_sentiment",
    "klines_to_frame",
    "make_client",
    "read_candles",
    "read_kline_csv",
    "read_sentiment",
    "read_sentiment_csv",
    "sentiment_path",
    "stored_candle_range",
    "validate_candles",
    "validate_sentiment",
]
