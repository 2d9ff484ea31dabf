(function(){
  // Click a header to sort by it (numbers as numbers, empty cells last); click again to reverse.
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
    if(v==='')return null;var n=Number(v);return isNaN(n)?v.toLowerCase():n;}
  function cmp(a,b){if(a===null&&b===null)return 0;if(a===null)return 1;if(b===null)return -1;
    if(typeof a===typeof b)return a<b?-1:a>b?1:0;return typeof a==='number'?-1:1;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads,function(th,col){
      th.addEventListener('click',function(){
        var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
        Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',dir===1?'ascending':'descending');
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(r,s){var c=cmp(key(r.cells[col]),key(s.cells[col]));
          return c===0?r.rowIndex-s.rowIndex:dir*c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  // After load, <body data-broken-images="N"> counts pictures that failed to decode (scripts/check_report.py).
  window.addEventListener('load',function(){
    var broken=0;document.querySelectorAll('img').forEach(function(img){
      if(!img.complete||img.naturalWidth===0)broken++;});
    document.body.setAttribute('data-broken-images',String(broken));
  });
})();
