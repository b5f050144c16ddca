w1a8,aq=pact,gran=channel
