"""Reading the Hydra config, once, at the top of a stage: checks that report every problem of a config
at once (:mod:`.checks`), adapters from config nodes to the typed objects the parts take
(:mod:`.adapters`), and the Hydra plumbing every stage shares (:mod:`.entry`).

The parts below (``data``, ``losses``, ``models``, ``export``, ``engine``, ``compress``) never see a
config object; the stages call this package and hand the parts what it returns.
"""
