default w=1 a=8 aq=pact
layer c1 wq=ternary gran=tensor
layer c2 w=3 wq=dorefa gran=group:16 ste=plain
layer c3 w=8 wq=ema aq=minmax
layer c3 a=0
first w=0 a=0
