"""The data path: FineVideo shards -> scenes -> shuffled scene order -> frames and captions
-> a prepared corpus (``ingest``, ``finevideo``, ``scenes``, ``video``, ``shuffle``,
``prepare``, ``corpus``, ``remote_media``, ``export``, ``sample``)."""
