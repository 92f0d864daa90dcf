"""The upload engine: sources, the sized streaming payload, the storage session, the flow.

``resources/media.py`` is its public face (``gw.media.upload`` / ``upload_many``).
"""
