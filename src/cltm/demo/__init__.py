"""The embedded demo only: the synthetic Common Voice-shaped corpus (eSpeak NG voices, `synth`) and the
pre-training of its tiny stand-in encoder (`pretrain`). Nothing of a real experiment imports it."""
