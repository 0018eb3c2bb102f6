"""Field mapping: the model (:mod:`.model`, part of each connection's settings) and the pure
functions that apply it to values (:mod:`.values`)."""
