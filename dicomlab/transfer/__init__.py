"""Transfers: retrieve and store with a queue, progress and an outcome table.

Sits above ``net`` (client associations) and ``server`` (the LocalPACS that
receives): ``core <- net, server <- transfer <- widgets, cli``.
"""
