"""The pure core: records, options, statuses and flow planning. No I/O; imports only ``errors``."""
