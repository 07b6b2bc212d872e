// AI panel on the study page of Orthanc Explorer (the legacy jQuery Mobile app, /app/explorer.html).
// Injected by entry.py with orthanc.ExtendOrthancExplorer(); served as /plugins/explorer.js.
//
// It shows the study's AI state (GET ../ai/studies/{id}): state, error or reason, pipeline and
// variant, the models (name + version), the findings in a few lines, the overlay (link + preview)
// and a "Re-run AI" button (POST ../ai/studies/{id}/run, then polls every second until the state
// is final). URLs are relative so that the panel works behind a reverse proxy. Every text that
// comes from the server (DICOM-derived strings included) is inserted with .text() or .attr(),
// never as HTML.
(function ($) {
  'use strict';

  var ORTHANC_ID = /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/;
  var FINAL = { done: true, failed: true, skipped: true, unseen: true };
  var DISCLAIMER = 'AI result \u2014 adjunct to interpretation, not a substitute';
  var POLL_MS = 1000;
  var POLL_LIMIT = 120;  // polls after a re-run before giving up (the worker may be busy)
  var MEASURES = [  // [key, label, digits]: the few measurements shown; the SR holds them all
    ['right_count_share', 'Right lobe share', 1],
    ['left_count_share', 'Left lobe share', 1],
    ['thyroid_to_background_ratio', 'Thyroid-to-background', 1]
  ];

  var shown = null;    // study id the panel shows
  var generation = 0;  // bumped on every page show: answers and timers of older shows are dropped
  var timer = null;

  var STYLE = [
    '#ai-panel { margin: 0 0 1em 0; padding: .8em 1em; border: 1px solid #bbb; border-radius: .6em;',
    '  background: #fcfcfc; box-shadow: 0 1px 3px rgba(0,0,0,.15); font-size: 14px; line-height: 1.45; }',
    '#ai-panel .ai-head { display: flex; align-items: center; gap: .6em; flex-wrap: wrap;',
    '  border-bottom: 1px solid #ddd; padding-bottom: .4em; margin-bottom: .5em; }',
    '#ai-panel .ai-title { font-weight: bold; font-size: 16px; }',
    '#ai-panel .ai-state { display: inline-block; padding: .05em .7em; border-radius: 1em;',
    '  color: #fff; font-weight: bold; background: #777; text-transform: uppercase; font-size: 12px;',
    '  letter-spacing: .04em; }',
    '#ai-panel .ai-state-done { background: #2e7d32; }',
    '#ai-panel .ai-state-running { background: #1565c0; }',
    '#ai-panel .ai-state-queued { background: #ef6c00; }',
    '#ai-panel .ai-state-failed { background: #c62828; }',
    '#ai-panel .ai-state-skipped, #ai-panel .ai-state-unseen { background: #757575; }',
    '#ai-panel .ai-updated { color: #666; font-size: 12px; }',
    '#ai-panel .ai-spacer { flex: 1; }',
    '#ai-panel .ai-button { font: inherit; font-weight: bold; padding: .3em .9em; border-radius: .4em;',
    '  border: 1px solid #1565c0; background: #1976d2; color: #fff; cursor: pointer; }',
    '#ai-panel .ai-button:disabled { background: #9e9e9e; border-color: #888; cursor: default; }',
    '#ai-panel .ai-note { color: #555; margin: .2em 0; }',
    '#ai-panel .ai-error { color: #b71c1c; margin: .2em 0; word-break: break-word; }',
    '#ai-panel .ai-reason { color: #444; margin: .2em 0; word-break: break-word; }',
    '#ai-panel .ai-result { display: flex; gap: 1em; align-items: flex-start; margin: .4em 0; }',
    '#ai-panel .ai-text { flex: 1; min-width: 0; }',
    '#ai-panel .ai-line { display: flex; margin: .1em 0; }',
    '#ai-panel .ai-label { color: #555; flex: 0 0 12.5em; padding-right: .5em; }',
    '#ai-panel .ai-model { display: inline-block; margin-right: .8em; font-family: monospace; }',
    '#ai-panel ul.ai-nodules { margin: .1em 0 .1em 1.2em; padding: 0; }',
    '#ai-panel .ai-warning { color: #e65100; }',
    '#ai-panel .ai-overlay { flex: 0 0 auto; text-align: center; font-size: 12px; }',
    '#ai-panel .ai-overlay img { display: block; width: 320px; max-width: 100%; border: 1px solid #999;',
    '  background: #000; margin-bottom: .2em; }',
    '#ai-panel .ai-disclaimer { margin-top: .5em; padding: .3em .6em; background: #fff8e1;',
    '  border: 1px solid #ffcc80; border-radius: .3em; color: #5d4037; font-size: 12px; }'
  ].join('\n');

  function el(tag, cls, text) {
    var node = $('<' + tag + '>');
    if (cls) node.addClass(cls);
    if (text !== undefined && text !== null) node.text(String(text));
    return node;
  }

  function line(label, value) {
    return el('div', 'ai-line').append(el('span', 'ai-label', label)).append(el('span', null, value));
  }

  function number(value, digits) {
    return (typeof value === 'number') ? value.toFixed(digits) : String(value);
  }

  function timeText(iso) {  // "2026-12-04T21:06:40.016+00:00" -> "2026-12-04 21:06:40 UTC"
    return iso ? String(iso).replace('T', ' ').substring(0, 19) + ' UTC' : '';
  }

  function ensureStyle() {
    if ($('#ai-panel-style').length === 0) {
      $('<style id="ai-panel-style" type="text/css">').text(STYLE).appendTo('head');
    }
  }

  function panel() {
    var existing = $('#ai-panel');
    if (existing.length) return existing;
    ensureStyle();
    var column = $('#study .ui-block-b > div').first();  // the wide column, above the series list
    var node = $('<div id="ai-panel">');
    if (column.length) column.prepend(node); else $('#study [data-role="content"]').prepend(node);
    return node;
  }

  function render(studyId, state, options) {
    options = options || {};
    var root = panel().empty().attr('data-study', studyId);
    var stateName = options.stateOverride || (state ? state.state : 'unavailable');
    root.attr('data-state', stateName).attr('data-updated', state && state.updated ? state.updated : '');

    var head = el('div', 'ai-head').appendTo(root);
    head.append(el('span', 'ai-title', 'AI'));
    head.append(el('span', 'ai-state ai-state-' + String(stateName).replace(/[^a-z]/g, ''), stateName));
    if (state && state.updated) {
      head.append(el('span', 'ai-updated', 'updated ' + timeText(state.updated) +
        (state.trigger === 'rerun' ? ' (re-run)' : '')));
    }
    head.append(el('span', 'ai-spacer'));
    // Orthanc's HTTP basic authentication has no roles: whoever may read our /ai/ API may ask for
    // a re-run, so "authorised" means "authenticated". The button appears only when the GET of the
    // study's AI state succeeded (401/403 from Orthanc or a proxy in front of /ai/: no button).
    if (options.canRun) {
      var button = el('button', 'ai-button', 'Re-run AI').attr({ id: 'ai-rerun', type: 'button', 'data-role': 'none' });
      if (options.busy) button.prop('disabled', true);
      button.click(function () { rerun(studyId, state); });
      head.append(button);
    }

    if (options.note) root.append(el('div', 'ai-note', options.note));
    if (options.failure) {
      root.append(el('div', 'ai-error', options.failure));
      return;
    }
    if (state.state === 'unseen') {
      root.append(el('div', 'ai-note', 'The AI node has not looked at this study yet.'));
    }
    if (state.error) {
      root.append(el('div', 'ai-error', 'Error' + (state.stage ? ' (' + state.stage + ')' : '') + ': ' + state.error));
    }
    if (state.reason) root.append(el('div', 'ai-reason', 'Reason: ' + state.reason));

    var results = $.isArray(state.results) ? state.results : [];
    var current = $.grep(results, function (r) { return !r.superseded_by; });
    $.each(current, function (i, result) { root.append(renderResult(result)); });
    if (results.length > current.length) {
      root.append(el('div', 'ai-note',
        (results.length - current.length) + ' earlier result(s) superseded by newer models.'));
    }
    root.append(el('div', 'ai-disclaimer', DISCLAIMER));
  }

  function renderResult(result) {
    var box = el('div', 'ai-result');
    var text = el('div', 'ai-text').appendTo(box);
    var findings = result.findings || {};

    var pipeline = String(result.pipeline || '?');
    if (result.variant) pipeline += ' \u00b7 variant ' + result.variant;
    text.append(line('Pipeline', pipeline));
    var models = el('span');
    $.each(result.models || [], function (i, m) {
      models.append(el('span', 'ai-model', m.name + ' ' + m.version)
        .attr('title', (m.task || '') + ' \u00b7 sha256 ' + (m.sha256 || '?') + ' \u00b7 ' + (m.provider || '')));
    });
    text.append(el('div', 'ai-line').append(el('span', 'ai-label', 'Models')).append(models));
    if (findings.view || findings.frame_number) {
      text.append(line('Image', (findings.view || '?') + ' view, frame ' + (findings.frame_number || '?')));
    }

    var measurements = findings.measurements || {};
    $.each(MEASURES, function (i, m) {
      var value = measurements[m[0]];
      if (value) {
        var unit = value.unit && value.unit.charAt(0) !== '{' ? ' ' + value.unit : '';
        text.append(line(m[1], number(value.value, m[2]) + unit));
      }
    });

    var nodules = findings.nodules || [];
    text.append(line('Cold-nodule candidates', nodules.length === 0 ? 'none' : String(nodules.length)));
    if (nodules.length) {
      var list = el('ul', 'ai-nodules').appendTo(text);
      var mark = findings.calibrated ? '' : '*';
      $.each(nodules, function (i, n) {
        var size = n.diameter_mm !== null && n.diameter_mm !== undefined
          ? number(n.diameter_mm, 1) + ' mm' + mark : number(n.diameter_px, 1) + ' px';
        list.append(el('li', 'ai-nodule', '#' + n.number + ' ' + n.lobe + ' lobe, ' + n.pole + ' pole \u00b7 ' + size +
          ' \u00b7 uptake ratio ' + number(n.nodule_to_parenchyma_ratio, 2) +
          ' \u00b7 confidence ' + number(n.confidence, 2)));
      });
    }
    text.append(el('div', 'ai-note', 'Sides are the patient\u2019s.' +
      (nodules.length && !findings.calibrated ? ' * Size from the stored pixel spacing (uncalibrated).' : '')));
    $.each(findings.warnings || [], function (i, w) { text.append(el('div', 'ai-warning', 'Warning: ' + w)); });
    if (result.forward) {
      var f = result.forward;
      text.append(line('Forwarded to ' + f.destination, f.state + (f.error ? ' \u2014 ' + f.error : '')));
    }

    var sc = result.outputs && result.outputs.sc && result.outputs.sc.instance_id;
    if (sc && ORTHANC_ID.test(sc)) {
      var link = el('a', 'ai-overlay').attr('href', '#instance?uuid=' + sc).appendTo(box);
      var img = $('<img>').attr({ src: '../instances/' + sc + '/preview', alt: 'AI overlay' });
      img.bind('error', function () { img.replaceWith(el('span', 'ai-note', 'preview unavailable')); });
      link.append(img).append(el('span', null, 'Open the overlay'));
    }
    return box;
  }

  function fetchState(studyId) {
    return $.ajax({ url: '../ai/studies/' + studyId, dataType: 'json', cache: false });
  }

  function failureText(xhr, what) {
    if (xhr.status === 401 || xhr.status === 403) return what + ': not authorised (HTTP ' + xhr.status + ').';
    if (xhr.status === 404) return what + ': unknown study or AI node not running (HTTP 404).';
    return what + ': HTTP ' + xhr.status + (xhr.statusText ? ' ' + xhr.statusText : '') + '.';
  }

  function stopPolling() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
  }

  function show(studyId) {
    var mine = ++generation;
    stopPolling();
    shown = studyId;
    fetchState(studyId).done(function (state) {
      if (mine === generation) render(studyId, state, { canRun: true });
    }).fail(function (xhr) {
      if (mine === generation) render(studyId, null, { failure: failureText(xhr, 'AI state unavailable') });
    });
  }

  function rerun(studyId, before) {
    var mine = ++generation;
    stopPolling();
    render(studyId, before, { canRun: true, busy: true, note: 'Asking for a re-run\u2026' });
    $.ajax({ url: '../ai/studies/' + studyId + '/run', type: 'POST', data: '', dataType: 'json' })
      .done(function () {
        if (mine !== generation) return;
        // The worker picks the request up on its next round; until the stored state moves, the
        // study is queued (the route answered 202 {"queued": true}).
        render(studyId, before, { canRun: true, busy: true, stateOverride: 'queued', note: 'Re-run requested.' });
        poll(studyId, before, mine, 0);
      })
      .fail(function (xhr) {
        if (mine === generation) {
          render(studyId, before, { canRun: true, note: failureText(xhr, 'Re-run refused') });
        }
      });
  }

  function poll(studyId, before, mine, count) {
    timer = setTimeout(function () {
      timer = null;
      fetchState(studyId).done(function (state) {
        if (mine !== generation) return;
        var moved = !before || state.updated !== before.updated;
        // Done and failed follow a new "running" (new start time); a re-run that only confirms
        // "skipped" moves nothing but the update time.
        var finished = moved && FINAL[state.state] &&
          (!before || state.started !== before.started || state.state === 'skipped');
        if (finished) {
          render(studyId, state, { canRun: true });
        } else if (count + 1 >= POLL_LIMIT) {
          render(studyId, state, { canRun: true,
            note: 'The re-run was accepted, but no new outcome is recorded yet: reload the page later.' });
        } else {
          var pending = (state.state === 'queued' || state.state === 'running') ? null : 'queued';
          render(studyId, state, { canRun: true, busy: true, stateOverride: pending, note: 'Re-run requested.' });
          poll(studyId, before, mine, count + 1);
        }
      }).fail(function (xhr) {
        if (mine !== generation) return;
        if (count + 1 >= POLL_LIMIT) {
          render(studyId, null, { failure: failureText(xhr, 'AI state unavailable') });
        } else {
          poll(studyId, before, mine, count + 1);
        }
      });
    }, POLL_MS);
  }

  function currentStudy() {
    var data = $.mobile && $.mobile.pageData;
    return data && ORTHANC_ID.test(data.uuid || '') ? data.uuid : null;
  }

  $('#study').live('pagebeforeshow', function () {
    var studyId = currentStudy();
    if (studyId) show(studyId); else $('#ai-panel').remove();
  });

  $('#study').live('pagehide', function () {
    generation++;  // drop answers in flight
    stopPolling();
  });

  // Going from one study straight to another keeps the same jQuery Mobile page (no
  // pagebeforeshow). Orthanc Explorer then refreshes the page itself on hashchange, or not (a
  // hash typed by hand): the panel follows the study the Explorer shows (its global currentUuid),
  // never one the rest of the page does not show.
  $(window).bind('hashchange', function () {
    setTimeout(function () {  // after the Explorer's own hashchange handler
      var explorerStudy = window.currentPage === 'study' ? window.currentUuid : null;
      if (explorerStudy && ORTHANC_ID.test(explorerStudy) && explorerStudy !== shown) show(explorerStudy);
    }, 0);
  });
})(jQuery);
