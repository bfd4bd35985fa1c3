"""``durably chaos``: the reliability battery shipped to users (DESIGN §12).

``battery`` runs the scenarios, ``app`` holds the functions its worker processes load,
``effects`` the side table they record into, ``tally`` the verdict, ``proxy`` the loopback
TCP proxy of the store-outage scenario, ``procs`` the processes it starts.
"""
