// The Raft Bookstore — DOM helpers shared by the checkout page (app.js) and the cluster page
// (cluster.js). Text from the server goes in with textContent, never as HTML.
var Dom = (function () {
  "use strict";

  return {
    byId: function (id) { return document.getElementById(id); },

    el: function (tag, className, text) {
      var node = document.createElement(tag);
      if (className) node.className = className;
      if (text !== undefined && text !== null) node.textContent = String(text);
      return node;
    },

    clear: function (node) {
      while (node.firstChild) node.removeChild(node.firstChild);
    }
  };
})();
