"""Pure core: values, conversions and decoders. No sockets, threads, widgets or plots."""
