"""Small utilities every layer uses: typed configs (:mod:`.config`), atomic files and saved
folders (:mod:`.io`), seeds (:mod:`.seeding`), batches (:mod:`.batching`), devices
(:mod:`.devices`) and figures (:mod:`.plots`)."""
