"""Local fake HTTP servers that speak the real protocols (Binance REST, Fear & Greed API).

Tests point the real clients (python-binance, requests) at them on 127.0.0.1;
nothing is patched. See binance_server.py for how to add endpoints.
"""
