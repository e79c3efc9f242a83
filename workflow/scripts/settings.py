"""Write a task's run settings (hyper-parameters, data, encoder, digest) as an explicit input of its runs.

The file only changes when the settings do, so editing one task's hyper-parameters reruns that
task's runs and nothing else.
"""

from cltm.io import write_json

write_json(snakemake.output[0], snakemake.params.spec)
