"""Streaming waveform processing: filters, beat detection, signal quality. State is carried
between chunks, so the output never depends on how a stream was cut."""
