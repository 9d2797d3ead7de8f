// Preloaded into the Portkey arm (node --require): binds its server to 127.0.0.1 instead of every interface.
const net = require('node:net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number') {
    if (args.length === 1 || typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1')
    else if (args[1] == null) args[1] = '127.0.0.1'
  }
  return listen.apply(this, args)
}
