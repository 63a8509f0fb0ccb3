// WCAG 2.2 AA checks of the live room that need no judgement, run in the page by
// tests/e2e/test_room.py: every control has a name, the video and the traces have text
// alternatives, the live regions exist, control borders reach 3:1 against what is behind them.
// Returns the problems found (none: []).
() => {
    const problems = [];
    // The first opaque background at or behind an element.
    const behind = (el) => {
        for (let e = el; e; e = e.parentElement) {
            const bg = getComputedStyle(e).backgroundColor;
            if (bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') return bg;
        }
        return 'rgb(0, 0, 0)';
    };
    const luminance = (rgb) => {
        const [r, g, b] = rgb.match(/\d+/g).slice(0, 3).map((v) => {
            const c = Number(v) / 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const contrast = (a, b) => {
        const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
        return (hi + 0.05) / (lo + 0.05);
    };
    for (const el of document.querySelectorAll('input, select, button, textarea')) {
        if (el.closest('[hidden]') || el.type === 'hidden') continue;
        const named = el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim();
        if (!named) problems.push(`no name: ${el.outerHTML.slice(0, 80)}`);
        const style = getComputedStyle(el);
        if (el.type !== 'checkbox' && el.type !== 'range') {
            const ratio = contrast(style.borderTopColor, behind(el.parentElement));
            if (ratio < 3) problems.push(`border contrast ${ratio.toFixed(2)}: ${el.id || el.tagName}`);
        }
    }
    if (!document.getElementById('video').getAttribute('aria-label')) problems.push('video unnamed');
    for (const c of document.querySelectorAll('.trace canvas')) {
        if (c.getAttribute('role') !== 'img' || !c.getAttribute('aria-label')) problems.push('trace unnamed');
    }
    for (const id of ['notices', 'chat-log']) {
        if (!document.getElementById(id).getAttribute('aria-live')) problems.push(`${id} not live`);
    }
    if (document.querySelectorAll('#consultations thead th[scope=col]').length < 5) problems.push('no table headers');
    return problems;
}
