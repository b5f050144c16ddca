 w2a4 , wq=minmax, aq=ema, gran=group:32, ste=plain
