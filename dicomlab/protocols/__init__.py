"""The protocols dicomlab speaks to a node, behind one interface (:mod:`.base`)."""
