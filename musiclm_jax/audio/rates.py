"""The sample rates audio moves at, stated once (MusicLM §3: SoundStream at 24 kHz, w2v-BERT at 16 kHz).

A module of its own, free of imports, so models can name the rates without
pulling in the audio readers (librosa, soundfile) that audio/io needs.
"""
SOUNDSTREAM_SAMPLE_RATE_HZ = 24_000
W2V_BERT_SAMPLE_RATE_HZ = 16_000
