"""(not written yet)"""
PRIMITIVES = ()
